"""Callbacks the experiments use."""

from fastdl.callbacks import Callback


class CleanTrainMetrics(Callback):
    """Evaluates the training data in inference mode (no dropout) at each epoch's end:
    the fit's own training loss is measured with dropout on, so it overstates the
    train/validation gap of a dropout network. Stores ``clean_loss`` / ``clean_accuracy``
    in the History (after History has run, like GradientMonitor)."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def on_epoch_end(self, epoch, logs=None):
        r = self.model.evaluate(self.x, self.y, batch_size=1024, return_dict=True)
        h = self.model.history.history
        for k, v in (("clean_loss", r["loss"]), ("clean_accuracy", r["accuracy"])):
            h.setdefault(k, []).append(v)
            if logs is not None:
                logs[k] = v
