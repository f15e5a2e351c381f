"""Property tests: whatever the chat, rounds and units keep every message, in order, and invent nothing."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from annotate.ingest.model import Chat, Message
from annotate.ingest.segmentation import handoff_index, merge_turns, split_rounds
from annotate.prompts.units import units_for

speakers = st.sampled_from(["customer", "ai", "agent"])
texts = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=30)
chats = (
    st.lists(st.tuples(speakers, texts), min_size=1, max_size=25)
    .filter(lambda ms: any(s == "customer" for s, _ in ms))
    .map(lambda ms: Chat("p", tuple(Message(s, t) for s, t in ms)))
)  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(chats)
def test_every_message_lands_in_exactly_one_round_in_order(chat: Chat) -> None:
    rounds = split_rounds(chat)
    indices = [i for r in rounds for t in r.turns for i in range(t.first, t.last + 1)]
    assert indices == list(range(len(chat.messages)))
    assert [r.number for r in rounds] == list(range(1, len(rounds) + 1))
    merged = "\n".join(t.text for r in rounds for t in r.turns)
    assert merged == "\n".join(m.text for m in _joined(chat))
    for r in rounds:
        customer_turns = [t for t in r.turns if t.speaker == "customer"]
        assert len(customer_turns) <= 1
        if r.number > 1:
            assert r.turns[0].speaker == "customer"


@settings(max_examples=300, deadline=None)
@given(chats)
def test_turns_alternate_speakers(chat: Chat) -> None:
    turns = merge_turns(chat.messages)
    assert all(a.speaker != b.speaker for a, b in itertools.pairwise(turns))


@settings(max_examples=300, deadline=None)
@given(chats)
def test_units_hold_only_real_turns_in_order(chat: Chat) -> None:
    at = handoff_index(chat)
    if at is not None:
        assert chat.messages[at].speaker == "agent"
        assert any(m.speaker == "ai" for m in chat.messages[:at])
    post = units_for(chat, "t", "post_handoff", 10**9)
    assert (len(post) == 1) == (at is not None)
    for unit in post:
        spans = [(t.first, t.last) for t in (*unit.context, *unit.target)]
        assert spans == sorted(spans) and spans[0][0] == 0 and spans[-1][1] == len(chat.messages) - 1
    per_round = units_for(chat, "t", "round", 10**9)
    assert len(per_round) == sum(m.speaker == "customer" for m in _joined(chat))
    for unit in per_round:
        assert [t.speaker for t in unit.target] == ["customer"]
        assert all(t.last < unit.target[0].first for t in unit.context)


def _joined(chat: Chat) -> list[Message]:
    """Messages with consecutive same-speaker runs merged, as turns hold them."""
    out: list[Message] = []
    for m in chat.messages:
        if out and out[-1].speaker == m.speaker:
            out[-1] = Message(m.speaker, f"{out[-1].text}\n{m.text}")
        else:
            out.append(m)
    return out
