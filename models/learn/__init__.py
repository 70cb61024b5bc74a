"""Online models: behavioural clusters, churn propensity with delayed labels, purchase value,
prequential evaluation, drift detection and snapshots (see ``docs/models.md``)."""
