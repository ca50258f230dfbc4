#!/bin/bash
# CALLS (default 8) Twilio calls of 30 s against a fresh serve (bench/loadgen.py); py-spy
# samples the server (every thread, idle included) for 40 s while the calls run, then
# bench/profile_threads.py summarises it. py-spy is not a dependency:
#   pip download --no-deps py-spy -d /tmp/pyspy && pip install --target /tmp/pyspy-inst /tmp/pyspy/py_spy-*.whl
set -uo pipefail
cd /work/main
CALLS=${CALLS:-8}
.venv/bin/python bench/loadgen.py --calls $CALLS --duration 30 --stagger-s 4 \
    --out /tmp/loadgen_profiled_$CALLS.json > /tmp/lg_$CALLS.log 2>&1 &
LG=$!
until grep -q -- "--- $CALLS concurrent calls" /tmp/lg_$CALLS.log; do sleep 0.5; done
PID=$(pgrep -f "streamer.cli serve" | head -1)
echo "server pid $PID"
/tmp/pyspy-inst/bin/py-spy record --pid $PID --duration 40 --rate 40 --format raw --threads \
    --idle --nonblocking -o /tmp/prof_$CALLS.raw > /tmp/pyspy_$CALLS.log 2>&1
wait $LG
tail -8 /tmp/lg_$CALLS.log
.venv/bin/python bench/profile_threads.py /tmp/prof_$CALLS.raw
