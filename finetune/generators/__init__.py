"""Generators of candidate question/answer pairs, a module each, with one contract:

    generate(chunks, config, ...) -> candidate pairs (and, for teachers, the unparsable count)

- `structural`: what the layout states outright: FAQ pairs, table rows, 'Key: value' lines,
  section headings; no model, no grammar (plus the English sentence rules, off by default);
- `answer_first`: the answer is chosen by its form, a weak teacher writes the question;
- `triples`: a capable teacher writes question / answer / evidence triples of mixed types as
  JSON.

`finetune.synthesize` runs them and `finetune.filters` checks all of their pairs alike.
"""

from collections.abc import Callable

Progress = Callable[[str, int, int], None]
"""progress(stage, done, total), stage one of 'rules', 'teacher', 'filter'."""
