"""Span names and attribute keys that mptrace emits.

These names are part of the public contract: dashboards, tests and the
acceptance checks depend on them. Every name mptrace uses is defined here and
nowhere else.
"""

# Span names.
SPAN_PROCESS = "mp.process"  # parent side: one child as the parent sees it
SPAN_PROCESS_RUN = "mp.process.run"  # child side: bootstrap to the end of run()
SPAN_PICKLE = "mp.pickle"  # one serialisation that matters
SPAN_IMPORT = "mp.import"  # spawn/forkserver child: import work before run()
SPAN_UNPICKLE = "mp.unpickle"  # one notable or failed unpickle on a channel (queue, connection)
SPAN_POOL = "mp.pool"  # one Pool or ProcessPoolExecutor, from creation until it is terminated, joined or shut down
SPAN_TASK = "mp.task"  # caller side: one submission (apply_async, map, submit, ...), until its last result arrives
SPAN_TASK_RUN = "mp.task.run"  # worker side: one task message (a call, or a chunk of a map)
SPAN_TASK_ITEM = "mp.task.item"  # worker side, on request: one item of a chunk
SPAN_POOL_INITIALIZER = "mp.pool.initializer"  # worker side: the pool's initializer
SPAN_PROGRAM = "mp.program"  # the root: the whole program run (mptrace run; install(program_span=True))

# On mp.program.
PROGRAM_NAME = "mp.program.name"  # the script as given, or "-m module"

# Attributes on mp.process and mp.process.run.
START_METHOD = "mp.start_method"
START_METHOD_SOURCE = "mp.start_method.source"  # context, set_start_method, default
PROCESS_NAME = "mp.process.name"
CHILD_PID = "mp.child.pid"
ARGS_PICKLED = "mp.args.pickled"
EXITCODE = "mp.exitcode"
EXIT_SIGNAL = "mp.exit.signal"
STATE_INHERITED = "mp.state.inherited"
STATE_DIVERGED = "mp.state.diverged"
STATE_NOT_PORTABLE = "mp.state.not_portable"
ARGS_CHANGED = "mp.args.changed"
# On mp.process: "args[0]: settings.Counter.count", where target/args/kwargs hold an instance of a class (or the
# class) whose class-level state changed since import: a spawn or forkserver child re-imports the class without it.
ARGS_CLASS_STATE_NOT_PORTABLE = "mp.args.class_state_not_portable"
STATE_NO_BASELINE = "mp.state.no_baseline"  # watched modules imported before install()
EVENT_STATE_DIVERGED = "mp.state.diverged"  # on mp.process.run, one per diverged name
STATE_NAME = "mp.state.name"  # event attribute: module.name
STATE_PARENT = "mp.state.parent"  # event attribute: the parent's value at start(), described
STATE_CHILD = "mp.state.child"  # event attribute: the child's value when run() began, described
STATE_DIFFERENCES = "mp.state.differences"  # event attribute: each differing path, both sides or "changed"
# On mp.process (whether changed since import) and mp.process.run (whether the child sees it
# as the parent had it): module.name or module that could not be compared: cannot tell.
STATE_UNKNOWN = "mp.state.unknown"
STATE_COMPARED = "mp.state.compared"  # on mp.process.run (spawn, forkserver): the modules the child compared
EVENT_STATE_UNKNOWN = "mp.state.unknown"  # on mp.process.run, one per entry of mp.state.unknown
STATE_REASON = "mp.state.reason"  # event attribute: why it could not be compared
PARENT_PID = "mp.parent.pid"  # the pid of the process that called start()
SPAN_SYNTHESIZED = "mp.span.synthesized"  # ended by the collector for a dead process
END_REASON = "mp.process.end_reason"  # why mp.process ended without an observed exit, or who stopped the child
# Its values for a child that died of the signal sent it on purpose. By its pool's terminate(), by its
# executor when the executor broke (its failure is on the executor and its tasks): how they end, not a
# failure of the worker's (ENDED_AS_EXPECTED). By multiprocessing at exit (a daemon process), by the
# program's own terminate() or kill() (STOPPED_BY_PARENT, by signal): killed by a signal, still an error, and
# said by whom.
END_BY_POOL = "terminated by its pool"
END_BY_EXECUTOR = "terminated by its executor"
END_AT_EXIT = "terminated at exit: a daemon process"
ENDED_AS_EXPECTED = (END_BY_POOL, END_BY_EXECUTOR)
STOPPED_BY_PARENT = {"SIGTERM": "terminated by its parent", "SIGKILL": "killed by its parent"}
# A spawn/forkserver child that failed before run() (on mp.process.run, and on mp.process once the
# parent has seen the exit): in which phase of its start, with what, where, and what to do.
CHILD_FAILURE_PHASE = "mp.child.failure.phase"  # one of the PHASE_* values below
CHILD_FAILURE_TYPE = "mp.child.failure.type"  # the exception's type name (error.type has it qualified)
CHILD_FAILURE_MESSAGE = "mp.child.failure.message"  # the exception's message, bounded
CHILD_FAILURE_LOCATION = "mp.child.failure.location"  # path:line of the deepest frame of the program's own code
CHILD_FAILURE_HINT = "mp.child.failure.hint"  # what to do about it, when mptrace knows
# On mp.process of a spawn/forkserver child that sent no span (it could not load the parent's mptrace, or
# it ended before it recorded anything): false, and why, as far as the parent knows. Absent when it did.
CHILD_TRACED = "mp.child.traced"
CHILD_UNTRACED_REASON = "mp.child.untraced_reason"
# Phases of a spawn/forkserver child's start (values of CHILD_FAILURE_PHASE).
PHASE_PREPARATION = "preparation"  # prepare(): name, authkey, sys.path, working directory, ...
PHASE_MAIN_IMPORT = "main-module import"  # prepare() re-running the main module as __mp_main__
PHASE_UNPICKLING = "process-object unpickling"  # rebuilding the Process: target, args, kwargs

# Attributes on mp.pickle (PICKLE_HOOKS also on mp.process, for the process object).
PICKLE_CHANNEL = "mp.pickle.channel"
PICKLE_BYTES = "mp.pickle.bytes"
PICKLE_HOOKS = "mp.pickle.hooks"
PICKLE_PATH = "mp.pickle.path"  # where the object that failed to pickle sits: args[1].handler
PICKLE_HINT = "mp.pickle.hint"  # what to do about it
PICKLE_TYPE = "mp.pickle.type"  # channels: the message's type, module.Qualname
PICKLE_CLASSES = "mp.pickle.classes"  # failed unpickle: the classes the pickle names, in order, bounded
UNPICKLE_HOOKS = "mp.unpickle.hooks"  # on mp.process.run: __setstate__ hooks that rebuilt the arguments

# On mp.pool.
POOL_TYPE = "mp.pool.type"  # multiprocessing.pool.Pool, concurrent.futures.ProcessPoolExecutor
POOL_PROCESSES = "mp.pool.processes"  # the number of workers asked for
POOL_MAX_TASKS = "mp.pool.max_tasks_per_child"  # when set: workers are replaced after this many tasks
POOL_WORKERS_STARTED = "mp.pool.workers_started"
POOL_WORKERS_REPLACED = "mp.pool.workers_replaced"  # started to replace a worker that exited
POOL_TASKS = "mp.pool.tasks"  # task messages sent to workers
POOL_TASKS_TRACED = "mp.pool.tasks_traced"  # ... of which got an mp.task.run span
POOL_END = "mp.pool.end"  # how it ended: join, terminate, shutdown, broken, exit, failed (its creation raised)
# On mp.task (caller side) and mp.task.run / mp.task.item (worker side).
TASK_API = "mp.task.api"  # Pool.apply_async, Pool.map, ProcessPoolExecutor.submit, ...
TASK_CHUNKS = "mp.task.chunks"  # task messages the submission sent
TASK_CHUNKS_TRACED = "mp.task.chunks_traced"  # ... of which got an mp.task.run span
TASK_INDEX = "mp.task.index"  # mp.task.run: the chunk's index; mp.task.item: the item's index in the chunk
TASK_ITEMS = "mp.task.items"  # mp.task.run: items in the chunk
TASK_CANCELLED = "mp.task.cancelled"  # the submission was cancelled before it ran
TASK_END_REASON = "mp.task.end_reason"  # why a task ended without a result
TASK_POOL = "mp.task.pool"  # mp.task: the span id (16 hex digits) of the mp.pool it was submitted to
TASK_CHANGED = "mp.task.changed"  # mp.task.run: watched names the task changed, left so for the worker's next tasks
TASK_CHANGED_LOOK = "mp.task.changed.look"  # "full" (fingerprints) or "shallow" (identities and sizes): see _carryover
# On mp.process.run of a Pool or executor worker: state its tasks left for the next ones (see _carryover).
WORKER_CARRIED = "mp.worker.carried"  # watched names a task changed (module.name, module.func (lru_cache))
WORKER_CARRIED_TASKS = "mp.worker.carried.tasks"  # for each of mp.worker.carried: how many tasks were seen changing it
WORKER_TASKS_CHECKED = "mp.worker.tasks_checked"  # tasks whose changes were looked for (the shallow look)
WORKER_TASKS_CHECKED_IN_FULL = "mp.worker.tasks_checked_in_full"  # ... of which in full (traced tasks)
PICKLE_TASK_HOOKS = "mp.pickle.task.hooks"  # mp.task: custom hooks that ran pickling the task
PICKLE_RESULT_HOOKS = "mp.pickle.result.hooks"  # mp.task.run: custom hooks that ran pickling the result
# Task and result pickling totals: mp.pickle.task.* on mp.task and mp.pool,
# mp.unpickle.task.* and mp.pickle.result.* on mp.task.run, mp.unpickle.result.*
# on mp.task and mp.pool (count, bytes, seconds).

# On the span that enclosed channel traffic (the current span, else mp.process.run):
# mp.pickle.<channel>.count / .bytes / .seconds and mp.unpickle.<channel>.* for
# every (un)pickle on the queue and connection channels; see _channels.

# On mp.process.run: one event per argument that pickling changed.
EVENT_ARG_CHANGED = "mp.arg.changed"
ARG = "mp.arg"  # event attribute: which argument (args[0], kwargs['x'], target)
ARG_DIFFERENCES = "mp.arg.differences"  # event attribute: what differs, bounded
ARGS_UNKNOWN = "mp.args.unknown"  # on mp.process.run: arguments too large to compare in full: cannot tell

# On mp.import.
IMPORT_PHASE = "mp.import.phase"  # "main": re-running the main module; "unpickle": the process object's imports
IMPORT_MODULE = "mp.import.module"  # phase main: the main module's path or name
IMPORT_COUNT = "mp.import.count"  # modules imported in the phase
IMPORT_SLOWEST = "mp.import.slowest"  # the slowest modules of the phase: "name 12.3 ms"
IMPORT_MAIN_RERAN = "mp.import.main_reran"  # phase main: the main module's top-level code ran again here
# On mp.process.run of a forkserver child: what it inherited from the fork server.
FORKSERVER_PRELOAD = "mp.forkserver.preload"  # the modules the server was asked to preload
IMPORT_INHERITED = "mp.import.inherited"  # modules already loaded when the child began (mptrace's own left out)

# On mp.process.run of a spawn or forkserver child: its environment variables and working directory
# when run() began, compared with the parent's at start(). Not under fork: the child is a copy.
ENV_ADDED = "mp.env.added"  # names the child has and the parent had not (bounded: "+N more" last)
ENV_REMOVED = "mp.env.removed"  # names the parent had and the child has not
ENV_CHANGED = "mp.env.changed"  # names both have, with different values
ENV_VALUES = "mp.env.values"  # capture_values only: "NAME: parent 'a', child unset", one per differing name
CWD_DIFFERS = "mp.cwd.differs"  # the child's working directory is not the parent's at start()
CWD_PARENT = "mp.cwd.parent"  # capture_values only, when a working directory differs: the parent's at start()
CWD_CHILD = "mp.cwd.child"  # capture_values only, when it differs: the child's when run() began
# On mp.process.run of a forkserver child: its environment and module state are the fork server's, as they were
# when the server started (the parent's then), not the parent's at start().
FORKSERVER_SNAPSHOT = "mp.forkserver.snapshot"  # true
FORKSERVER_STARTED = "mp.forkserver.started"  # when the server started (ISO 8601, UTC); absent: unknown
FORKSERVER_SNAPSHOT_AGE = "mp.forkserver.snapshot_age"  # seconds from the server's start to the parent's start()
FORKSERVER_CWD_DIFFERS = "mp.forkserver.cwd.differs"  # the server's working directory (where it preloaded) was not
FORKSERVER_CWD = "mp.forkserver.cwd"  # ... the parent's at start(); capture_values only, when it differs: the server's

# On mp.process under fork: the other threads alive in the parent at fork time.
FORK_THREADS = "mp.fork.threads"
FORK_THREAD_NAMES = "mp.fork.thread_names"
# ... and the operating system's threads of the process that the threading module does not know
# (a C extension's pool, a driver's thread): how many, and "comm (tid N)" of each, bounded. Where the
# platform cannot list them (no /proc/self/task), the count is absent and native_unknown says why.
FORK_THREADS_NATIVE = "mp.fork.threads.native"
FORK_NATIVE_THREAD_NAMES = "mp.fork.threads.native_names"
FORK_THREADS_NATIVE_UNKNOWN = "mp.fork.threads.native_unknown"

# On mp.process.run: the random generators the child started with, as "name:hash" (a keyed hash of the
# state, never the state): processes with the same entry draw the same numbers. See _randomstate.
RANDOM_STATES = "mp.random.states"
RANDOM_UNKNOWN = "mp.random.unknown"  # generators found but not hashed (over the bound, no readable state)
# On mp.process.run: true when nobody hashed them (install(random_state=False)): mp.random.states is absent
# by choice. Without it, an absent mp.random.states means not known (the child ended before it reported it).
RANDOM_OFF = "mp.random.off"

# On mp.process under fork: the open descriptors the child inherits (sockets, regular files, pipes; see
# _fds), each as "socket tcp 127.0.0.1:5123->127.0.0.1:9000 (db.CONN)"; those a running sibling holds too.
FORK_FDS = "mp.fork.fds"
FORK_FDS_UNLISTED = "mp.fork.fds.unlisted"  # descriptors beyond the first 64 that were not looked at
FORK_FDS_SHARED = "mp.fork.fds.shared"  # entries of mp.fork.fds that a running sibling also holds
FORK_FDS_SHARED_WITH = "mp.fork.fds.shared_with"  # the names of those siblings

# OpenTelemetry semantic conventions that cover the same facts.
OTEL_PROCESS_EXIT_CODE = "process.exit.code"
OTEL_ERROR_TYPE = "error.type"
OTEL_CODE_FUNCTION_NAME = "code.function.name"
OTEL_CODE_FILE_PATH = "code.file.path"  # where a failure was raised
OTEL_CODE_LINE_NUMBER = "code.line.number"
OTEL_PROCESS_PID = "process.pid"
OTEL_PROCESS_PARENT_PID = "process.parent_pid"
OTEL_PROCESS_CREATION_TIME = "process.creation.time"
OTEL_SERVICE_INSTANCE_ID = "service.instance.id"

# Start methods (values of START_METHOD), in the order reports list them.
START_METHODS = ("fork", "spawn", "forkserver")

# Start-method sources (values of START_METHOD_SOURCE).
SOURCE_CONTEXT = "context"  # the process came from an explicit context object
SOURCE_SET_START_METHOD = "set_start_method"  # global method set to a non-default
SOURCE_DEFAULT = "default"  # the platform's default for this Python version

# The instrumentation scope of mptrace's own spans.
SCOPE_NAME = "mptrace"
