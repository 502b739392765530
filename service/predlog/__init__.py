"""The prediction log: every predicted row (or a sample), its ground truth, live quality.

Nothing here imports the web layer. The read API the training side uses:

```python
from tabserve.service.predlog import PredictionStore

store = PredictionStore("sqlite:///data/predictions.db")  # any SQLAlchemy URL
store.migrate()                      # alembic upgrade head, under a lock; idempotent
rows = store.labelled("iris")        # list[LabelledRow], oldest prediction first
rows = store.labelled("iris", version=2, since=time.time() - 86400)
for r in rows:
    r.inputs       # {"sepal_length_cm": 5.1, ...}: feature -> value, None if redacted/missing
    r.truth        # the ground truth (a class label or a number)
    r.prediction   # what the model answered
    r.version, r.request_id, r.row, r.time, r.feedback_time   # times: UTC epoch seconds
```

`PredictionStore` also writes (`write`, `add_truths`), pages (`page`), looks rows up
(`find`), counts (`count`) and applies retention (`expire`). `PredictionLogWriter`
(`writer`) feeds it from the data plane without slowing predictions; `feedback`
validates and joins ground truth; `quality` computes accuracy, macro F1 and MAE.
"""

from tabserve.service.predlog.records import (
    Expired,
    Label,
    LabelledRow,
    LoggedPrediction,
    LoggedRow,
    Outcome,
    Truth,
)
from tabserve.service.predlog.store import PredictionStore

__all__ = [
    "Expired",
    "Label",
    "LabelledRow",
    "LoggedPrediction",
    "LoggedRow",
    "Outcome",
    "PredictionStore",
    "Truth",
]
