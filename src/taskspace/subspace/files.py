"""The files of a saved subspace folder (what :meth:`taskspace.subspace.Subspace.save` writes), named where both the
subspace and the built-ins that ship as such folders (:mod:`taskspace.builtin`) read them."""

SUBSPACE_JSON = "subspace.json"
SUBSPACE_TENSORS = "subspace.safetensors"
