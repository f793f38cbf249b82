"""A backend for runner tests: seed 0 trains fine, seed 1 raises, seed 2 goes NaN, seed 3
hangs inside its first epoch, and seeds 100-199 train fine at `hidden[0] / 10` seconds per epoch."""

import math
import time

from ffbench.backend import Backend as BaseBackend
from ffbench.backend import Phase, Trainer


class FakeTrainer(Trainer):
    def __init__(self, trial, data):
        self.trial, self.batch_size = trial, trial.batch_size
        self.steps_per_epoch = len(data.train) // trial.batch_size
        self.epochs_done = 0

    def phases(self):
        return [Phase("fake", self.trial.epochs, self.trial.optimizer)]

    def begin_phase(self, phase):
        pass

    def train_epoch(self, phase, epoch, lr):
        if self.trial.seed == 1:
            raise RuntimeError("boom in epoch %d" % epoch)
        if self.trial.seed == 3:
            time.sleep(3600)
        if 100 <= self.trial.seed < 200:
            time.sleep(self.trial.hidden[0] / 10)
        self.epochs_done += 1
        return math.nan if self.trial.seed == 2 else 1.0 / (epoch + 1)

    def epoch_losses(self, device_losses):
        return {"fake_loss": device_losses}

    def can_evaluate(self, phase):
        return True

    def error(self, split):
        return 0.5 / self.epochs_done

    def sync(self):
        pass

    def state(self):
        return {}

    def load_state(self, state):
        pass


class Backend(BaseBackend):
    name = framework = "fake"

    def versions(self):
        return {"fake": "1.0"}

    def device_name(self):
        return "fake device"

    def trainer(self, trial, data):
        return FakeTrainer(trial, data)

    def reset_peak_memory(self):
        pass

    def peak_memory(self):
        return 123, "device"
