"""``railguard doctor``: prove an app is fit to ship by running it in a throwaway environment.

Each check (one module per check or small group) gets a :class:`~railguard.doctor.context.Context`
(the spec, the environment, the real folders it may only read, and a scratch environment it may do
anything in) and returns a :class:`~railguard.doctor.report.CheckResult`. The runner
(:mod:`railguard.doctor.runner`) runs the selected checks in order, tears the scratch down even
when interrupted, and builds the report the CLI (``railguard doctor``) prints. docs/doctor.md documents
every check id.
"""
