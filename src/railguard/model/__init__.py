"""Pure data and validation: the spec, resources, plans, diagnostics. Imports nothing else of ours."""
