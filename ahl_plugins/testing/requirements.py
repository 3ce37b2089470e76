"""What the contract kit checks: one id and one statement per requirement (listed in docs/plugins.md)."""

REQUIREMENTS: dict[str, str] = {
    # scorers
    "scorer.supported-kinds": "supported_kinds, if declared, is a non-empty subset of ('map', 'vector')",
    "scorer.build": "factory(spec, options) returns an nn.Module with a non-empty tuple head_names and combine()",
    "scorer.prepare": "prepare(normal_features, generator) exists and runs on the training normals' features",
    "scorer.trainable": "the scorer has at least one trainable parameter (AHL adapts parameters)",
    "scorer.heads": "forward(list of per-scale features) returns a dict with exactly head_names, each a finite (B,) float tensor of the features' dtype and device",
    "scorer.combine": "combine(heads) returns one finite (B,) float score per sample",
    "scorer.gradients": "the loss's gradient reaches every trainable parameter of the scorer and is finite",
    "scorer.functional-call": "under torch.func.functional_call with swapped parameters the output follows the swapped parameters, and gradients reach them",
    "scorer.state": "every tensor the scorer keeps is a registered parameter or buffer (functional_call and state_dict see nothing else)",
    "scorer.batch-independent": "in eval mode a sample's scores do not depend on the rest of the batch (a batch of one works)",
    "scorer.determinism": "built under the same seed and prepared with an equally seeded generator, the scores are identical; prepare draws randomness only from its generator",
    "scorer.maps": "head_maps(features), when the scorer has it (optional), returns per scale a dict with exactly head_names, each a finite B×h×w map on that scale's grid (or (B,) for a head without positions) in the features' dtype and device, and combine() applied to them position by position gives finite maps",
    "scorer.maps-batch-independent": "in eval mode a sample's head maps do not depend on the rest of the batch",
    "scorer.position-heads": "position_heads, when the scorer declares it (optional), names maps that forward(features, positions=True) adds, each a finite B×h×w tensor on map features; forward(features) alone returns exactly head_names",
    # losses
    "loss.build": "factory(options) returns a callable",
    "loss.signature": "the loss is called as loss(heads, labels): heads a dict of (B,) head scores, labels a (B,) long tensor",
    "loss.scalar": "the loss is a finite 0-dim float tensor, differentiable in the head scores with finite gradients",
    "loss.pure": "the same inputs give the same loss whatever the global RNG state, and the inputs are not modified",
    "loss.labels": "label convention: raising the anomaly score of label 1 or 2 samples lowers the loss, raising it for label 0 samples raises it",
    "loss.absent-group": "the loss and its gradients stay finite when seen (1) or pseudo (2) anomalies are absent from the batch",
    "loss.positions": "a loss that declares uses_position_labels = True, called as loss(heads, labels, positions=...) with per-position labels (1 defect, 0 clean, NaN unknown) at each position map, is finite with finite gradients to the maps; raising a map at a defect lowers it, at a clean position raises it (losses without the declaration skip this)",
    # models
    "model.references": "the scorer, loss and extractors a model names are registered",
    "model.options": "the model's scorer_options and loss_options validate against the components' option models",
    "model.meta-gradient": "one functional inner step (create_graph=True) followed by a query loss gives finite gradients for every trainable parameter",
    "model.learns": "a few Adam steps on a fixed synthetic batch lower the model's loss",
    # feature extractors
    "extractor.build": "factory(options) returns a FeatureExtractor (spec, fingerprint(), extract(); input_kind 'image' or 'vector')",
    "extractor.spec": "spec is a FeatureSpec (after fit() for vector extractors)",
    "extractor.output": "extract(batch) returns one finite float tensor per scale, B×C×H×W for maps or B×C for vectors, with C = spec.channels",
    "extractor.fingerprint": "fingerprint() is a non-empty string, stable across calls and builds, and equal fingerprints give equal features",
    "extractor.frozen": "extract is deterministic, batch-independent, and leaves its input unchanged",
    # pseudo-anomaly generators
    "generator.build": "factory(options) returns a PseudoAnomalyGenerator with generate() and domain 'image' or 'vector'",
    "generator.output": "generate(x, pool, generator) returns (anomalies, mask): anomalies like x (images stay in [0, 1]), mask bool B×1×S×S or B×D",
    "generator.mask": "the output differs from x only where mask is true, and every sample is changed",
    "generator.determinism": "the same seeded generator gives the same output whatever the global RNG state; inputs are not modified",
    # estimators
    "estimator.build": "factory(n_tasks, options) returns an estimator with task_weights(history, targets, error_weights)",
    "estimator.weights": "task_weights returns (T,) finite non-negative weights summing to 1, for any T and history length",
    "estimator.determinism": "under the same seed, fresh estimators give identical weights for identical inputs",
}
