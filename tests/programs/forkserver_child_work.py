"""What traced forkserver children do of mptrace's work outside their target (a start-up guard).

    cd tests/programs && python forkserver_child_work.py RESULT.json

Run from its own folder: its fork server preloads this module (the program's
own preload list, before mptrace's), which profiles each child it forks, from
the fork to the child's exit. The child's target draws from a module-level
generator of a module it imports itself (tests.random_targets); this module,
which the server loaded, holds one too. RESULT.json gets:

* ``ran``: mptrace's functions the child ran (module:name);
* ``unmarshalled``: whether the child unmarshalled code other than an import's (the stowaway's loader);
* ``compiled``: the file names of the module-level code that unpickling its preparation data ran
  (``<string>``: source it compiled);
* ``modules_read``: how many modules the child's module watch looked at, when
  it could leave out those its server found to be libraries' (else absent);
* ``random_states``: the child's mp.random.states, and its exit code;
* ``otel_child_run_by``: what ran ``mptrace._otel_child``'s module code, if the child wired OpenTelemetry;
* ``second``: the same of a second child, started once the server runs (and whether it was traced);
* ``third``: the same of a third, whose target's module imports OpenTelemetry.
"""

import json
import marshal
import multiprocessing
import os
import random
import sys

generator = random.Random(5)  # a generator of a module the fork server loaded
_found = {"ran": set(), "unmarshalled": False, "compiled": set()}
_package = []  # mptrace's folder, once the child has loaded it


def _record(frame, event, arg):
    if event == "c_call":
        if arg is marshal.loads and not frame.f_code.co_filename.startswith("<frozen"):  # not an import's
            _found["unmarshalled"] = True
        return
    code = frame.f_code
    if event == "call" and code.co_name == "<module>" and frame.f_back.f_code.co_name == "_main":
        _found["compiled"].add(code.co_filename)  # run by unpickling the preparation data (spawn._main)
    if event == "call" and code.co_name == "<module>" and code.co_filename.endswith("_otel_child.py"):
        _found["otel_child_run_by"] = frame.f_back.f_code.co_name  # its import, or the server's prepared code
    if not _package:
        package = sys.modules.get("mptrace")
        if package is None:
            return
        _package.append(os.path.dirname(os.path.abspath(package.__file__)) + os.sep)
    code = frame.f_code
    if not code.co_filename.startswith(_package[0]):
        return
    if event == "call":
        _found["ran"].add("%s:%s" % (os.path.basename(code.co_filename)[:-3], code.co_name))
    elif event == "return" and code.co_name == "_modules_since_server" and arg is not None:
        _found["modules_read"] = len(arg)


def _report_at_exit(exit_now):
    def _exit(code):
        sys.setprofile(None)
        with open(os.environ["MPTRACE_TEST_RESULT"], "a") as out:  # a line per child
            out.write(json.dumps(dict(_found, ran=sorted(_found["ran"]), compiled=sorted(_found["compiled"]))) + "\n")
        exit_now(code)

    return _exit


def _profile_this_child():
    # A forkserver child ends in os._exit (multiprocessing.forkserver), after _bootstrap and mptrace's end.
    os._exit = _report_at_exit(os._exit)
    sys.setprofile(_record)


if __name__ != "__main__":  # in the fork server: profile each child it forks
    os.register_at_fork(after_in_child=_profile_this_child)


def main(result_file):
    import mptrace
    import tests.random_targets
    import tests.targets
    from tests.programs import in_memory_pipeline

    provider, exporter = in_memory_pipeline()
    os.environ["MPTRACE_TEST_RESULT"] = result_file
    mptrace.install(tracer_provider=provider)
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["forkserver_child_work"])
    exit_codes = []
    # The first starts the server; the second finds it running; the third's target is in a module that imports
    # OpenTelemetry, which the child then wires.
    for target in (tests.random_targets.draw, tests.random_targets.draw, tests.targets.succeed):
        process = context.Process(target=target)
        process.start()
        process.join()
        exit_codes.append(process.exitcode)
    mptrace.flush()
    runs = [span for span in exporter.get_finished_spans() if span.name == "mp.process.run"]
    with open(result_file) as found:
        result, second, third = [json.loads(line) for line in found]
    result.update(random_states=list(runs[0].attributes["mp.random.states"]), exitcode=exit_codes[0],
                  second=dict(second, exitcode=exit_codes[1], traced=len(runs) == 3),
                  third=dict(third, exitcode=exit_codes[2]))
    with open(result_file, "w") as out:
        json.dump(result, out)


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    main(sys.argv[1])
