"""Where a loaded server's threads spend their time: a py-spy profile summarised per thread.

Input: ``py-spy record --threads --idle --format raw`` of ``emotion-stream serve`` (see
``bench/profile_load.sh``). Per thread (the numbered threads of one pool merged): samples,
the share that was working (the leaf frame is not a wait), and the project functions
nearest the leaf of the working samples.

    python bench/profile_threads.py /tmp/prof_8.raw
"""

from __future__ import annotations

import collections
import re
import sys

# A leaf frame that is one of these is a thread waiting, not working.
WAITS = ("wait (threading", "_worker (concurrent/futures/thread.py:8", "select (selectors",
         "epoll", "Condition.wait", "get (queue.py", "SimpleQueue", "run_forever",
         "_run_once", "sleep")
PROJECT_FRAME = re.compile(r"\((models|streamer|offline_training)/")


def summarise(lines: list[str]) -> str:
    samples: collections.Counter[str] = collections.Counter()
    working: collections.Counter[str] = collections.Counter()
    where: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for line in lines:
        stack, _, count_text = line.rstrip("\n").rpartition(" ")
        if not stack:
            continue
        count, frames = int(count_text), stack.split(";")
        thread = re.sub(r"_\d+$", "_N", re.sub(r"\(\d+\)", "", frames[0]).strip())
        samples[thread] += count
        if any(wait in frames[-1] for wait in WAITS):
            continue
        working[thread] += count
        nearest = next((f for f in reversed(frames) if PROJECT_FRAME.search(f)), frames[-1])
        where[thread][re.sub(r":\d+\)", ")", nearest)] += count
    out = []
    for thread, n in samples.most_common():
        out.append(f"{thread:40s} samples {n:6d} working {working[thread]:6d} "
                   f"({100 * working[thread] / n:5.1f} %)")
        out += [f"      {c:6d}  {frame}" for frame, c in where[thread].most_common(6)]
    return "\n".join(out)


if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        print(summarise(f.readlines()))
