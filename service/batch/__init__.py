"""Batch scoring: whole files scored by a served model version, in-process or on Dask.

The model loads through the service's own loading (`core.loading.prepare_version`:
verify the artifact and its seal, check its name and version, warm it up) and every
chunk or partition is checked by the version's `FeatureSchema`, so a file is scored
by exactly the model and the checks that serve requests. Answers are named as the
records API names them (`protocol.records.record_columns`). Nothing here knows HTTP.
"""
