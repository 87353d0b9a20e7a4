"""The aim-controller API types (pydantic models of the CRDs) and the CRD generator."""
