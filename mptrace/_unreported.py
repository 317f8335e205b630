"""What a child's run span does not say because the child never reported it: not known, never "nothing".

A child writes its run span's START when ``run()`` begins, then compares what
arrived (module state, arguments, environment: spawn and forkserver) and
hashes its random generators; those attributes reach the trace with its END
(or with a START written again, see _child.record_random_states). A child that
ends before that (killed, ``os._exit``) has a run span the collector ended
for it, without them. An absent attribute then means "not known", and the
tree, ``mptrace compare`` and ``mptrace.testing`` must say so, not read it as
"nothing differs".

Left alone: an attribute absent because the feature is off (mp.random.off),
a child that failed before ``run()`` (mp.child.failure.phase says how) and a
child whose run span never arrived (the tree says "not traced").

Works on an attributes mapping, from an SDK span, a Jaeger JSON span or a
spool record alike.
"""

from mptrace import semconv

# Why an attribute is absent: the collector ended the span for a child that had died ...
ENDED_EARLY = "the child ended before it reported it"
# ... or the child ended its span itself and still lacks it: its comparison failed (logged in the child).
NOT_RECORDED = "the child did not record it (an mptrace error, logged on the mptrace logger in the child)"


def comparisons_missing(attributes):
    """Why the comparisons of what arrived (module state, arguments, environment) are not known, or None when
    the run span has them. Every child that reports them has mp.state.diverged (a fork child from its START)."""
    if semconv.STATE_DIVERGED in attributes or semconv.CHILD_FAILURE_PHASE in attributes:
        return None
    return _why(attributes)


def random_missing(attributes):
    """Why the random generators' states are not known, or None: the run span has them, or hashing is off."""
    if (semconv.RANDOM_STATES in attributes or attributes.get(semconv.RANDOM_OFF) is True
            or semconv.CHILD_FAILURE_PHASE in attributes):
        return None
    return _why(attributes)


def _why(attributes):
    return ENDED_EARLY if attributes.get(semconv.SPAN_SYNTHESIZED) is True else NOT_RECORDED
