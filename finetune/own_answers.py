"""RAFT targets in the base model's own words (`raft.targets = "own"`).

A small model tuned on another writer's answers learns that writer's surface (copy a sentence of
a shown chunk) faster than it learns which sentence answers: measured on the sample corpus, the
synthesized targets made `rag+tuned` less often right than `rag`. Here the base model answers
each cited example's own prompt, exactly as `rag` mode would, and an answer replaces the target
only when it is right by the same tests the answer engine and the evaluation apply:

- it is not a refusal;
- the sentences no shown chunk supports are left out (`retrieval.attribution`, the engine's
  check; its 'drop' policy), and what is left cites a chunk that holds the pair's evidence;
- a sentence cut off by the token limit is left out too;
- it holds the pair's key fact (the evaluation's normalization), or, where the pair's answer
  is a whole sentence, one of its sentences is supported by the evidence alone; a yes/no
  pair's label opens the answer.

The kept answer carries its verified [n] markers, so the adapter learns to cite and to prefer
the answers it already gets right, while staying close to its own distribution (rejection-
sampled self-distillation, as in STaR and RFT). Where the first answer misses, the model is
asked once more (STaR's rationalization), and an answer that passes is trained on the prompt
without the help: `hint` adds the key fact and the evidence sentence after the question;
`focused` shows the oracle chunk alone, without distractors (its markers are dropped and the
check gives those of the full prompt).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

from finetune.data import ChatExample, Grounding
from retrieval.answer_match import holds_answer
from retrieval.attribution import Claim, answer_lead, render, split_claims, strip_prompt_markup
from retrieval.prompt import SENTENCE_STOPS, parse_citations

Generate = Callable[[list[list[dict[str, str]]]], list[str]]
"""Prompts (chat messages) → the base model's replies, in order."""
Verify = Callable[[list[tuple[str, list[int]]], list[str]], list[Claim]]
"""(claims, shown chunk texts) → the claims checked and cited (`verify_claims` with the
project's statistics and threshold)."""
IsRefusal = Callable[[str], bool]

_CLOSERS = "\"')]\u201d\u2019"


@dataclass
class OwnAnswerReport:
    """What became of the cited examples."""

    cited_examples: int = 0
    own: int = 0
    """Targets replaced by the model's first answer."""
    hint: int = 0
    """Targets replaced by its answer with the hint."""
    focused: int = 0
    """Targets replaced by its answer to the focused prompt (the oracle chunk alone)."""
    kept_pair: int = 0
    """Missed both times, trained on the synthesized answer (`own_miss = "pair"`)."""
    dropped: int = 0
    """Missed both times and left out (`own_miss = "drop"`)."""
    kept_yes_no: int = 0
    """Yes/no examples missed both times, trained on the synthesized answer (the label, then
    the sentence) whatever `own_miss` says: a base model that does not open its answers with
    the label cannot teach itself to."""
    fallback: bool = False
    """None of the model's answers passed: every target stayed the synthesized answer."""
    others_left_out: int = 0
    """Refusal and closed-book examples left out with them, so each kind keeps its share."""
    kept_styled: int = 0
    """Kept as written, not asked: the teacher rewrote them into the house voice."""
    misses: dict[str, int] | None = None
    """Why answers were not accepted, per reason, over both rounds."""

    def to_dict(self) -> dict:
        return dict(vars(self))


def _finished(text: str) -> bool:
    return text.rstrip().rstrip(_CLOSERS).rstrip().endswith(tuple(SENTENCE_STOPS)) or (
        text.rstrip().endswith("]")
    )


def _states_key_fact(text: str, claims: list[Claim], grounding: Grounding, verify: Verify) -> bool:
    """The answer holds the key fact; or, for a pair whose answer is a whole sentence rather
    than a span, one of its sentences says what the evidence says (the engine's support check
    against the evidence alone), since a sentence can be said in other words. A yes/no label
    must open the answer ('No, it is 40 kg', not 'Yes, no load above 40 kg')."""
    if grounding.verdict:
        lead = answer_lead(text)
        if lead[-1:].isalnum():  # a bare label ('No'): no sentence says why
            return False
        return lead[:-1].casefold() == grounding.key_fact.strip().casefold()
    if holds_answer(text, grounding.key_fact):
        return True
    if not grounding.whole_sentence or not grounding.evidence.strip():
        return False
    against_evidence = verify([(claim.text, []) for claim in claims], [grounding.evidence])
    return any(claim.supported for claim in against_evidence)


def accepted_answer(
    reply: str,
    grounding: Grounding,
    verify: Verify,
    is_refusal: IsRefusal,
    *,
    focused: bool = False,
) -> tuple[str | None, str]:
    """The training target made of `reply`, or None, with the reason ('ok' when accepted).

    Args:
        reply: the model's text for the example's prompt.
        grounding: the example's shown chunks, key fact and evidence holders.
        verify: checks claims against the shown chunks.
        is_refusal: whether a text says the refusal sentence.
        focused: `reply` answers the focused prompt, whose one document is numbered 1: its
            markers are removed and the check gives the ones of the full prompt.
    """
    text, _markup = strip_prompt_markup(reply)
    text, _cited, _dropped = parse_citations(text, 0 if focused else len(grounding.chunks))
    if not text.strip():
        return None, "empty"
    if is_refusal(text):
        return None, "refused"
    claims = split_claims(text, verdict=True)
    if len(claims) > 1 and not _finished(text):
        claims = claims[:-1]  # the last sentence ran into the token limit
    elif not _finished(text):
        return None, "unfinished"
    verified = verify(claims, grounding.chunks)
    # Sentences no shown chunk supports are left out, as the engine's 'drop' policy would.
    verified = [claim for claim in verified if claim.supported is not False]
    if not any(claim.supported for claim in verified):
        return None, "unsupported"
    kept = render(verified)
    if not _states_key_fact(kept, verified, grounding, verify):
        return None, "key fact missing"
    if not any(n in grounding.holders for claim in verified for n in claim.cited):
        return None, "cites no evidence"
    return kept, "ok"


def with_hint(prompt: list[dict[str, str]], grounding: Grounding) -> list[dict[str, str]]:
    """`prompt` with a hint after the question: the key fact and the chunk that states it."""
    hint = f'\n\nHint: the answer is "{grounding.key_fact.strip()}", as document '
    hint += f"[{grounding.holders[0]}] says"
    if grounding.evidence.strip():
        hint += f': "{" ".join(grounding.evidence.split())}"'
    messages = [dict(m) for m in prompt]
    messages[-1]["content"] += hint + "."
    return messages


def _retry_prompt(example: ChatExample, retry: str) -> list[dict[str, str]] | None:
    grounding = example.grounding
    if retry == "hint":
        return with_hint(example.messages[:-1], grounding)
    return grounding.focused_prompt


def own_answer_targets(
    examples: Sequence[ChatExample],
    generate: Generate,
    verify: Verify,
    is_refusal: IsRefusal,
    *,
    retry: str = "hint",
    miss: str = "drop",
    keep: Collection[str] = (),
) -> tuple[list[ChatExample], OwnAnswerReport, list[dict[str, str]]]:
    """`examples` with each cited example's target replaced by the model's own accepted answer.

    Examples without a grounding (refusals, closed book) pass unchanged, as many of them as
    keep their share of the examples when cited ones are dropped.

    Args:
        examples: RAFT conversations, each ending with its target.
        generate: the base model answering prompts (greedy, the engine's settings).
        verify: see `Verify`.
        is_refusal: see `IsRefusal`.
        retry: where the first answer misses, ask once more with a 'hint' or the 'focused'
            prompt, or not at all ('none').
        miss: 'drop' or 'pair': what becomes of a cited example with no accepted answer (a
            yes/no example keeps its pair either way, see `OwnAnswerReport.kept_yes_no`).
        keep: questions whose cited examples keep their target as written and are not asked
            (answers the teacher rewrote into the house voice).

    Returns:
        The examples in their order (less the dropped ones), the counts, and every answer the
        model gave: {"question", "round", "reply", "verdict"} ('ok' or why it was refused).
    """
    report = OwnAnswerReport(misses={})
    grounded = [i for i, e in enumerate(examples) if e.grounding is not None]
    kept = {i for i in grounded if examples[i].grounding.question in keep}
    cited = [i for i in grounded if i not in kept]
    report.cited_examples = len(grounded)
    report.kept_styled = len(kept)
    targets: dict[int, str] = {}
    attempts: list[dict[str, str]] = []
    rounds = ("own",) if retry == "none" else ("own", retry)
    for name in rounds:
        focused = name == "focused"
        asked = [
            (i, examples[i].messages[:-1] if name == "own" else _retry_prompt(examples[i], name))
            for i in cited
            if i not in targets
        ]
        pending = [i for i, prompt in asked if prompt]
        prompts = [prompt for _, prompt in asked if prompt]
        replies = generate(prompts) if prompts else []
        for i, reply in zip(pending, replies):
            grounding = examples[i].grounding
            target, reason = accepted_answer(reply, grounding, verify, is_refusal, focused=focused)
            attempts.append(
                {"question": grounding.question, "round": name, "reply": reply, "verdict": reason}
            )
            if target is None:
                report.misses[reason] = report.misses.get(reason, 0) + 1
                continue
            targets[i] = target
            setattr(report, name, getattr(report, name) + 1)
    if cited and not targets and not kept:
        # A model that gets none right has nothing of its own to learn from: the synthesized
        # answers are trained as written, and the report says so.
        report.fallback = True
        return list(examples), report, attempts

    def keeps_pair(i: int) -> bool:
        return miss == "pair" or examples[i].grounding.verdict

    kept_cited = len(kept) + sum(1 for i in cited if i in targets or keeps_pair(i))
    # The other examples (refusals, closed book) keep their share of the mix: dropping cited
    # examples alone would teach refusing more often than the RAFT settings ask.
    others = [i for i, e in enumerate(examples) if e.grounding is None]
    share = kept_cited / len(grounded) if grounded else 1.0
    keep_others = set(others[: round(len(others) * share)])
    report.others_left_out = len(others) - len(keep_others)
    result = []
    for i, example in enumerate(examples):
        if example.grounding is None:
            if i in keep_others:
                result.append(example)
        elif i in kept:
            result.append(example)
        elif i in targets:
            answer = {"role": "assistant", "content": targets[i]}
            result.append(ChatExample([*example.messages[:-1], answer], example.teacher_messages))
        elif keeps_pair(i):
            if miss == "pair":
                report.kept_pair += 1
            else:
                report.kept_yes_no += 1
            result.append(example)
        else:
            report.dropped += 1
    return result, report, attempts
