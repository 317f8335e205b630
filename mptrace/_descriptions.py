"""Reading fingerprint descriptions: what a human is shown, the digest, how two differ.

A description (see _fingerprint) that does not show a whole value ends in
`` #`` and a keyed digest of the full content (``str(len=4) #1f0c9a2e44b7``),
or `` #?`` where the content walk ran out of budget. ``visible()`` is what a
human is shown; ``compare()`` and ``differences()`` tell how two descriptions,
or two fingerprints, differ.

Apart from _fingerprint, which makes descriptions: a spawn child compares the
module state its parent sent with these alone, and imports the walk only when
it has a fingerprint of its own to take (its arguments, a global it holds).
Standard library only, nothing at import but definitions.
"""

DIGEST_HEX = 12  # hex characters of a digest shown in a fingerprint
UNKNOWN = "?"  # the digest of content the walk could not finish

_HEX_DIGITS = "0123456789abcdef"


def _digest_at_end(description):
    """(where its `` #`` begins, the digest) if the description ends in a digest, else None.

    What ``re.search(r" #([0-9a-f]{12}|\\?)$", description)`` finds (``$``: at the end or before a final
    newline), with string methods: no pattern to compile as a spawn child imports this module.
    """
    end = len(description) - 1 if description.endswith("\n") else len(description)
    if description.endswith(" #" + UNKNOWN, 0, end):
        return end - 3, UNKNOWN
    start = end - DIGEST_HEX - 2
    if start >= 0 and description.startswith(" #", start):
        digest = description[start + 2:end]
        if not digest.strip(_HEX_DIGITS):
            return start, digest
    return None


def visible(description):
    """The description without its digest: what a human is shown."""
    found = _digest_at_end(description) if description else None
    return description[:found[0]] if found else description


def digest_of(description):
    """The digest a description ends in, ``?`` if unknown, None if it has none."""
    found = _digest_at_end(description) if description else None
    return found[1] if found else None


def compare(was, now):
    """How description ``now`` differs from ``was``: None (it does not), "visible",
    "digest" (only the hidden content differs) or "unknown" (cannot tell)."""
    if was == now:
        return None if digest_of(was) != UNKNOWN else "unknown"
    if was is None or now is None or visible(was) != visible(now):
        return "visible"
    if UNKNOWN in (digest_of(was), digest_of(now)) or None in (digest_of(was), digest_of(now)):
        return "unknown"
    return "digest"


def hidden_change(description):
    """Words for a change only the digest shows: ``changed (same size)`` where a size is shown."""
    return "changed (same size)" if "len=" in visible(description) else "changed"


def differences(before, after):
    """``[(path, kind)]`` of the deepest paths where two fingerprints differ (see ``compare``), in path
    order (``[2]`` before ``[10]``).

    A path is left out when a path below it differs too: the deeper one says
    where (below a path that cannot tell, any deeper finding will do; below
    one that changed, only a change), unless its type changed. Items only one
    side holds are told one by one when they are few (``mixed[1]: parent
    Queue, child <missing>``); more of them (a list that grew, a dict that
    lost keys) are told by their container, whose description shows both
    sizes, when nothing else differs below it: ``results: parent
    list(len=20000), child list(len=0)``, not sixteen items each missing on
    one side.
    """
    found = [(path, compare(before.get(path), after.get(path)))
             for path in sorted(set(before) | set(after), key=_path_order)]
    found = [(path, kind) for path, kind in found if kind is not None]
    changed = [path for path, kind in found if kind != "unknown"]
    listed = [path for path, _ in found]
    deepest = [(path, kind) for path, kind in found if _type_changed(before.get(path), after.get(path))
               or not any(_below(other, path) for other in (listed if kind == "unknown" else changed))]
    return _told_by_their_containers(deepest, found, before, after)


MAX_ONE_SIDED = 3  # items only one side holds, told one by one under a container; more: the container


def _told_by_their_containers(deepest, found, before, after):
    """``deepest`` with the items only one side holds replaced by their container (see differences)."""
    for container, kind in found:  # outermost first: a path sorts before those below it
        if kind != "visible" or before.get(container) is None or after.get(container) is None:
            continue
        below = [path for path, _ in deepest if _below(path, container)]
        if len(below) > MAX_ONE_SIDED and all(before.get(path) is None or after.get(path) is None
                                              for path in below):
            deepest = [item for item in deepest if item[0] not in below and item[0] != container]
            deepest.append((container, kind))
    return sorted(deepest, key=lambda item: _path_order(item[0]))


def _path_order(path):
    """A path's sort key: its runs of decimal digits in numeric order, so that ``[2]`` comes before ``[10]``.

    A run is compared by its length without leading zeros, then as text: the order of the numbers, with no
    int() to fail on a run too long for one, or on a digit int() refuses (``²`` is a digit, not a decimal).
    """
    key, run, decimal = [], [], False
    for char in path:
        if char.isdecimal() != decimal:
            key.append(_run_order(run, decimal))
            run, decimal = [], not decimal
        run.append(char)
    key.append(_run_order(run, decimal))
    return key


def _run_order(run, decimal):
    text = "".join(run)
    if not decimal:
        return 0, 0, text, text
    number = text.lstrip("0")
    return 1, len(number), number, text


def _type_changed(was, now):
    """Whether two descriptions name different types: what the paths below cannot say."""
    if was is None or now is None:
        return False
    return visible(was).split("(")[0] != visible(now).split("(")[0]


def _below(path, ancestor):
    return len(path) > len(ancestor) and path.startswith(ancestor) and path[len(ancestor)] in ".["
