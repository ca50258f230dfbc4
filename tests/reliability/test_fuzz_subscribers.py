"""Property-based fuzzing of the subscriber channel (sans I/O): the ``subscribe`` handler
and the query-string filter.

Any message (text, bytes, any JSON value, deep nesting) is answered ``subscribed`` or
``error``; the answer is encodable JSON; after an ``error`` the filter is what it was;
after ``subscribed`` every name in it passes the edge rule. A query string either gives
a filter of valid names or raises the documented ``ValueError`` (HTTP 400).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from hypothesis import event as label
from hypothesis import given
from hypothesis import strategies as st

from streamer.core.events import to_json
from streamer.core.validation import is_identifier
from streamer.publish.ws_server import MAX_FILTER_ITEMS, SubscriberFilter, subscribe_reply
from tests.reliability.test_fuzz_protocols import json_values, strings

names = st.lists(st.one_of(strings, st.sampled_from(["call-1", "customer", "agent"])),
                 max_size=6)
selection = st.one_of(st.just("*"), names, json_values,
                      st.just(["a"] * (MAX_FILTER_ITEMS + 1)))
subscribe = st.fixed_dictionaries({"type": st.one_of(st.just("subscribe"), json_values),
                                   "streams": selection, "channels": selection}).map(json.dumps)
messages = st.one_of(subscribe, subscribe, st.text(max_size=100), st.binary(max_size=100),
                     json_values.map(json.dumps),
                     st.integers(1, 50_000).map(lambda n: "{\"a\":" * n + "1" + "}" * n))


def names_ok(filt: SubscriberFilter) -> bool:
    return all(is_identifier(n) for group in (filt.streams, filt.channels) if group
               for n in group)


@given(st.lists(messages, max_size=6))
def test_any_subscribe_messages(raws: list[str | bytes]) -> None:
    filt = SubscriberFilter()
    for raw in raws:
        before = (filt.streams, filt.channels)
        reply = subscribe_reply(filt, raw)
        text = to_json(reply)  # encodable, no NaN
        assert json.loads(text)["type"] in ("subscribed", "error")
        if reply["type"] == "error":
            assert (filt.streams, filt.channels) == before
        assert names_ok(filt)
        label(reply["type"])


def as_query(params: dict[str, Any]) -> str:
    return "/events?" + "&".join(f"{quote(str(k))}={quote(str(v), safe=',')}"
                                 for k, v in params.items())


@given(st.dictionaries(st.sampled_from(["streams", "channels", "stream", "channel", "token"]),
                       st.one_of(strings, names.map(",".join)), max_size=4))
def test_any_query_string_filter(params: dict[str, str]) -> None:
    try:
        filt = SubscriberFilter.from_path(as_query(params))
    except ValueError as exc:
        str(exc).encode("utf-8")
        label("refused (HTTP 400)")
        return
    assert names_ok(filt)
    label("accepted")
