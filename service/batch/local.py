"""Score a file in this process, chunk by chunk, so memory holds one chunk at a time."""

from __future__ import annotations

import pandas as pd

from tabserve.service.batch.job import ScoreJob, ScoreReport, written_in_place
from tabserve.service.batch.model import BatchModel
from tabserve.service.batch.scoring import Scorer
from tabserve.service.batch.sources import check_columns, find_inputs, read_chunks
from tabserve.service.batch.writers import FrameWriter


def score_locally(job: ScoreJob, model: BatchModel) -> ScoreReport:
    """Read, check, predict and write `job.input` chunk by chunk; raises BatchError."""
    inputs = find_inputs(job.input)
    columns = list(dict.fromkeys([*model.schema.names, *job.carried]))
    check_columns(inputs, columns)
    scorer = Scorer(model, job.carried, job.on_error, textual=inputs.textual)
    empty = pd.DataFrame({name: pd.Series(dtype=object) for name in columns})
    with (
        written_in_place(job.output) as output,
        written_in_place(job.refused_path) as side,
    ):
        answers = FrameWriter(output, job.format, scorer.output_meta(empty), shown=job.output)
        refused = FrameWriter(side, job.format, None, shown=job.refused_path)
        for chunk in read_chunks(inputs, columns, job.chunk_rows):
            scored = scorer.score(chunk.frame, chunk.source, chunk.first_row)
            answers.write(scored.output)
            refused.write(scored.refused)
        answers.close()
        refused.close()
    side_path = job.refused_path if refused.rows else None
    return ScoreReport(answers.rows, refused.rows, job.output, side_path)
