"""Binary cross-entropy baseline for multi-label recognition: backbone -> linear -> per-class logits.

The reference every long-tailed multi-label method (LTML) is compared against, in the
same sweep and MLflow experiment. ``sampler: uniform`` is the "baseline (uniform)" of
Guo & Wang, "Long-Tailed Multi-Label Visual Recognition by Collaborative Training on
Uniform and Re-balanced Samplings", CVPR 2021 (https://openaccess.thecvf.com/content/
CVPR2021/html/Guo_Long-Tailed_Multi-Label_Visual_Recognition_by_Collaborative_Training_on_Uniform_and_CVPR_2021_paper.html);
``sampler: class_aware`` is their "baseline (re-balanced)": the same loss on batches from
the class-aware sampler (cycle over classes, draw an image containing each).
"""

from __future__ import annotations

from torch.nn import functional as F

from sweeplab.data.samplers import class_aware_sampler
from sweeplab.method import Method, choice, number
from sweeplab.models.heads import Classifier


class BinaryCrossEntropy(Method):
    hyperparameters = {
        "sampler": choice("uniform", ("uniform", "class_aware"),
                          "uniform: the engine's shuffle | class_aware: the paper's \"baseline (re-balanced)\""),
        "sampler_epoch_length": number(1.0, "class_aware only: draws per epoch, x the training set size",
                                       low=0, low_open=True),
    }

    def __init__(self, hp, data):
        super().__init__(hp, data)
        self.epoch_length = float(self.hp["sampler_epoch_length"])

    def build_model(self, backbone, feature_dim):
        return Classifier(backbone, feature_dim, self.data.num_classes)

    def train_sampler(self, dataset, generator):
        if self.hp["sampler"] == "uniform":
            return None  # the engine's seeded shuffle
        return class_aware_sampler(dataset, generator, self.epoch_length, self.hp["batch_size"])

    def training_step(self, model, batch):
        inputs, targets, _ = batch
        logits = model(inputs)
        # L_BCE = -(1/BC) sum_{i,k} [y_ik log s(z_ik) + (1 - y_ik) log(1 - s(z_ik))]
        loss = F.binary_cross_entropy_with_logits(logits, targets.float())
        return {"loss": loss, "logits": logits.detach()}
