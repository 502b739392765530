"""Where `LabelEncodedClassifier` lived before it joined the artifact format.

Artifacts pickled before the move name `tabserve.training.label_encoding.LabelEncodedClassifier`
(a pickle stores a class by module and name), so this module must stay importable and
keep the name: unpickling them finds the class in `tabserve.artifact.label_encoding`.
"""

from tabserve.artifact.label_encoding import LabelEncodedClassifier

__all__ = ["LabelEncodedClassifier"]
