"""Class-level state, kept the way programs keep it: a counter on a class, and a default its instances share."""


class Counter:
    count = 0  # requests handled so far

    @classmethod
    def bump(cls):
        cls.count += 1


class Job:
    retries = 1  # the default; tonight's run raises it

    def __init__(self, name):
        self.name = name

    @property
    def label(self):
        return "%s, %d retries" % (self.name, self.retries)


def run(job):
    """A target: the job arrives pickled under spawn, its class is imported afresh."""
    print("child: %s; %d requests counted" % (job.label, Counter.count), flush=True)
