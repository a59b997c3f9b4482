"""Policy: built-in guardrails and the spec's own CEL rules, turned into verdicts on plans."""
