"""Cross-entropy baseline: backbone -> linear classifier, softmax cross-entropy.

The reference every classification method in sweeplab is compared against, in
the same sweep and MLflow experiment. ``label_smoothing`` is PyTorch's
(Szegedy et al., "Rethinking the Inception Architecture", CVPR 2016).
"""

from __future__ import annotations

from torch.nn import functional as F

from sweeplab.method import Method, number
from sweeplab.models.heads import Classifier


class CrossEntropy(Method):
    hyperparameters = {
        "label_smoothing": number(0.0, "mass moved from the target to a uniform distribution (0: plain CE)",
                                  low=0, high=1),
    }

    def build_model(self, backbone, feature_dim):
        return Classifier(backbone, feature_dim, self.data.num_classes)

    def training_step(self, model, batch):
        inputs, targets, _ = batch
        logits = model(inputs)
        # L_CE = -log softmax(z)_y, with the target smoothed by label_smoothing
        loss = F.cross_entropy(logits, targets, label_smoothing=float(self.hp["label_smoothing"]))
        return {"loss": loss, "logits": logits}
