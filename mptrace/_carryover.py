"""State carried between the tasks of a reused worker (Pool, ProcessPoolExecutor).

A pool worker runs many tasks in one process: a task that changes watched
state (what ``_modstate.state_of`` returns for a watched module: its
globals, and whatever else it is taught to watch) or stores a result in an
``functools.lru_cache`` of a watched module leaves that change for the next
task this worker runs, and for no other worker. ``WorkerRole`` asks a
``Carryover`` what changed when each task arrives (that is what the previous
task left) and when a traced task's result leaves (what that task did).

Pool tasks are hot, so there are two looks:

* the shallow look, at every task's arrival (traced or not, so counts do not
  depend on sampling): for each watched name, the identity of its value, and
  ``len()`` of a value that is a plain list, dict, set, bytearray or deque;
  the number of names in each namespace; and each lru_cache's misses and
  size. It sees a name rebound (``CALLS += 1``, ``CONFIG = load()``; also to
  an equal new object), added or deleted, an item added to or removed from a
  container (``SEEN.append(x)``), and a cache that stored a new result or was
  cleared. It does not see a change that keeps the value's identity and
  size: ``SEEN[0] = x``, ``CONFIG["db"]["host"] = x``, an item replaced in a
  dict, an attribute of an object. It holds no reference to the values (ids
  and sizes only), so no object of the user's lives longer.
* the full look: ``state_of`` of the module, compared with what it returned
  at the previous full look (keyed fingerprints, two levels deep, see
  ``_modstate``). It runs when a traced task (one with an ``mp.task.run``
  span, rate-limited by ``task_spans_per_second``) arrives and ends, for at
  most one traced task a FULL_LOOK_INTERVAL, and less often when full looks
  would take more than FULL_LOOK_SHARE of the worker's time (a module holding
  a large value costs more), and when a name was added or deleted. A change
  only it sees, made by untraced tasks, is found at the next full look and
  counted once for all of them; a name the shallow look counted since the
  last full look is not counted again.

Standard library only: spawn workers load this on their start-up path.
"""

import operator
import sys
import time
from collections import deque

from mptrace import _modstate

# Values whose len() is the C one and tells whether items were added or removed.
_SIZED = frozenset((list, dict, set, bytearray, deque))
LRU_CACHE = " (lru_cache)"  # the suffix of a cache's name: ``module.func (lru_cache)``
MAX_CACHES = 16  # per module
FULL_LOOK_SHARE = 0.01  # at most this share of a worker's time goes to full looks
FULL_LOOK_INTERVAL = 1.0  # seconds: and at most one traced task a second is looked at in full
PROGRESS_SECONDS = 1.0  # a worker a signal may end writes what it found at most this often (see progress_due)


def _cache_type():
    import functools

    return type(functools.lru_cache(maxsize=None)(len))


class ModuleView:
    """One watched module as the last look saw it."""

    __slots__ = ("name", "module", "key", "state", "pending", "entries", "caches", "cache_marks")

    def __init__(self, name, module, key):
        self.name = name
        self.module = module
        self.key = key
        self.state = _modstate.state_of(module, key)  # as of the last full look
        self.pending = set()  # names the shallow look counted since the last full look
        self.entries = []  # [namespace, getter of its watched values as a tuple, their names, sized positions, marks]
        self.caches = []  # (qualified name, namespace, function name)
        self.cache_marks = []
        self._build()

    def _build(self):
        """The shallow view of the names the last full look returned, and the module's lru_caches."""
        by_namespace = {}
        for name in self.state:
            namespace, attribute = _namespace_of(self.module, name)
            if namespace is not None:
                by_namespace.setdefault(id(namespace), (namespace, [], []))
                by_namespace[id(namespace)][1].append(attribute)
                by_namespace[id(namespace)][2].append(name)
        self.entries = []
        for namespace, attributes, names in by_namespace.values():
            getter = operator.itemgetter(*attributes) if len(attributes) > 1 else operator.itemgetter(
                attributes[0], attributes[0])  # always a tuple
            entry = [namespace, getter, tuple(names), (), None]
            _remark(entry)
            self.entries.append(entry)
        namespace = _modstate.own_namespace(self.module)
        self.caches = []
        if namespace is not None:
            cache_type, defined_here = _cache_type(), (self.name, getattr(self.module, "__name__", None))
            functions = sorted(name for name, value in list(dict.items(namespace))
                               if type(value) is cache_type and getattr(value, "__module__", None) in defined_here)
            self.caches = [("%s.%s%s" % (self.name, name, LRU_CACHE), namespace, name)
                           for name in functions[:MAX_CACHES]]
        self.cache_marks = self._cache_marks()

    def _cache_marks(self):
        marks = []
        for _, namespace, name in self.caches:
            try:
                info = namespace[name].cache_info()
                marks.append((info.misses, info.currsize))
            except Exception:
                marks.append(None)
        return marks

    def _shallow_changes(self):
        """Names whose value was rebound or changed size; None when a name was added or deleted."""
        found = []
        for entry in self.entries:
            namespace, getter, names, sized, marks = entry
            now = _marks(namespace, getter, sized)
            if now == marks:
                continue
            if now is None or marks is None or now[0] != marks[0]:
                return None
            ids, was_ids = now[1], marks[1]
            found.extend(names[i] for i in range(len(names)) if ids[i] != was_ids[i])
            found.extend(names[i] for i, was, size in zip(sized, marks[2], now[2]) if was != size and
                         ids[i] == was_ids[i])
            _remark(entry)
        return found

    def unchanged(self):
        """Whether every watched value has its identity and size, and no cache is to be read (else: changes())."""
        for namespace, getter, _, sized, marks in self.entries:
            try:
                values = getter(namespace)
            except Exception:
                return False
            if marks is None or len(namespace) != marks[0] or tuple(map(id, values)) != marks[1]:
                return False
            if sized and tuple(map(len, map(values.__getitem__, sized))) != marks[2]:
                return False
        return not self.caches

    def changes(self, full):
        """The qualified names changed since the last look (and the caches that stored or dropped results)."""
        found = []
        if self.caches:
            marks = self._cache_marks()
            if marks != self.cache_marks:
                found = [qualified for (qualified, _, _), was, now in zip(self.caches, self.cache_marks, marks)
                         if was != now]
                self.cache_marks = marks
        names = self._shallow_changes()
        if names is None:  # a name added or deleted: only the full look tells which
            names, full = [], True
        self.pending.update(names)
        if full:
            state = _modstate.state_of(self.module, self.key)
            names += [n for n in _modstate.differing_names(self.state, state) if n not in self.pending]
            self.state, self.pending = state, set()
            self._build()
        return ["%s.%s" % (self.name, n) for n in names] + found


def _marks(namespace, getter, sized):
    """(names in the namespace, the identity of each watched value, the size of each sized one); None: one is gone."""
    try:
        values = getter(namespace)
        return len(namespace), tuple(map(id, values)), tuple(map(len, map(values.__getitem__, sized)))
    except Exception:
        return None


def _remark(entry):
    """The entry's sized positions and marks, from the values bound now."""
    namespace, getter = entry[0], entry[1]
    try:
        values = getter(namespace)
    except Exception:
        entry[3], entry[4] = (), None
        return
    names = entry[2]  # a getter of one name returns it twice
    entry[3] = tuple(i for i, value in enumerate(values[:len(names)]) if type(value) in _SIZED)
    entry[4] = _marks(namespace, getter, entry[3])


def _namespace_of(module, name):
    """(the mapping that holds ``name``, the key there): ``CALLS`` in the module's, ``Class.attr`` in the class's."""
    parts = name.split(".")
    holder = module
    for part in parts[:-1]:
        namespace = _modstate.own_namespace(holder)
        if namespace is None or part not in namespace:
            return None, None
        holder = namespace[part]
    namespace = _modstate.own_namespace(holder)
    if namespace is None or parts[-1] not in namespace:
        return None, None
    return namespace, parts[-1]


class Carryover:
    """One worker's looks at the watched state, and what its tasks were seen changing."""

    def __init__(self, watch, key):
        self.watch = watch
        self.key = key
        self.views = {}  # module name -> ModuleView
        self.view_list = []  # their values
        self.modules_seen = -1  # len(sys.modules) when the views were listed
        self.changed_by = {}  # qualified name -> tasks seen changing it, in the order first seen
        self.checked = 0  # tasks whose changes the shallow look checked (every task after the first look)
        self.checked_in_full = 0  # ... of which the full look checked too (traced tasks)
        self.looked = False  # a task arrived since the last count of a task's end
        self.full_task = False  # the traced task now running was looked at in full when it arrived
        self.full_seconds = 0.0  # ... which took this long
        self.full_allowed_at = 0.0  # monotonic time before which no full look is made
        self.written = None  # (names, monotonic time) of the last progress write
        self.plain = []  # (namespace, getter) of every view's entries without sized values: the hot path's pass
        self.sized = []  # (namespace, getter, sized positions) of the others
        self.caches = []  # (namespace, function name) of every view's lru_caches
        self.marks = False  # what _marks returned after the last slow look (False: never equal)

    def _views(self):
        """The views of the watched modules, a module seen for the first time remembered as it is now."""
        if len(sys.modules) != self.modules_seen:
            views = {}
            for name, module in self.watch.watched_modules():
                view = self.views.get(name)
                if module is not None:
                    views[name] = view if view is not None and view.module is module else ModuleView(
                        name, module, self.key)
            self.views = views
            self.view_list = list(views.values())
            self.modules_seen = len(sys.modules)
        return self.view_list

    def look(self, full=False):
        """What changed since the last look."""
        found = []
        for view in self._views():
            if full or not view.unchanged():
                found.extend(view.changes(full))
        return found

    def task_arrived(self, traced=False):
        """A task arrived: what the previous one left changed is counted; returns whether any was found.

        A traced task is looked at in full when it arrives and when it ends,
        at most one a FULL_LOOK_INTERVAL, and less often when full looks would
        take more than FULL_LOOK_SHARE of the time (a large value costs more).
        """
        if not traced and self.looked and len(sys.modules) == self.modules_seen and self._marks() == self.marks:
            self.checked += 1  # the hot path: nothing changed
            return False
        full = traced and time.monotonic() >= self.full_allowed_at
        began = time.perf_counter()
        found = self.look(full)
        if self.looked:
            self.checked += 1
        self.looked = True
        self.full_task = full
        self.full_seconds = time.perf_counter() - began if full else 0.0
        self.count(found)
        self._remember()
        return bool(found)

    def _marks(self):
        """The identities and sizes of every watched value, and every cache's misses and size, in one pass."""
        try:
            marks = [(len(namespace), *map(id, getter(namespace))) for namespace, getter in self.plain]
            if self.sized:
                marks += [(len(namespace), *map(id, values), *map(len, map(values.__getitem__, sized)))
                          for namespace, getter, sized in self.sized for values in (getter(namespace),)]
            if self.caches:
                marks += [(info.misses, info.currsize) for namespace, name in self.caches
                          for info in (namespace[name].cache_info(),)]
            return marks
        except Exception:  # a name was deleted, a cache replaced: the slow look says what
            return None

    def _remember(self):
        """The hot path's view of what the slow look just saw."""
        entries = [entry for view in self.view_list for entry in view.entries]
        self.plain = [(entry[0], entry[1]) for entry in entries if not entry[3]]
        self.sized = [(entry[0], entry[1], entry[3]) for entry in entries if entry[3]]
        self.caches = [(namespace, name) for view in self.view_list for _, namespace, name in view.caches]
        marks = self._marks()
        self.marks = False if marks is None else marks

    def task_ended(self):
        """A traced task's result is leaving: the names it changed, and whether the look was full."""
        full = self.full_task
        began = time.perf_counter()
        found = self.look(full)
        if full:
            spent = self.full_seconds + time.perf_counter() - began
            self.full_allowed_at = time.monotonic() + max(FULL_LOOK_INTERVAL, spent / FULL_LOOK_SHARE)
            self.checked_in_full += 1
        self.checked += 1
        self.count(found)
        self.looked = False  # the next arrival is not a task's end: not counted again
        self._remember()
        return found, full

    def count(self, found):
        changed_by = self.changed_by
        for name in found:
            changed_by[name] = changed_by.get(name, 0) + 1

    def attributes(self, semconv):
        names = list(self.changed_by)
        return {
            semconv.WORKER_CARRIED: names,
            semconv.WORKER_CARRIED_TASKS: [self.changed_by[n] for n in names],
            semconv.WORKER_TASKS_CHECKED: self.checked,
            semconv.WORKER_TASKS_CHECKED_IN_FULL: self.checked_in_full,
        }

    def progress_due(self):
        """Whether to write what was found so far now: a new name, or a second since the last write.

        A worker its pool terminates never reaches its end; the root ends its
        run span from the last START record it wrote, so that is where the
        findings go (see WorkerRole._write_carried).
        """
        now = time.monotonic()
        written = self.written
        if written is not None and written[0] == len(self.changed_by) and now - written[1] < PROGRESS_SECONDS:
            return False
        self.written = (len(self.changed_by), now)
        return True
