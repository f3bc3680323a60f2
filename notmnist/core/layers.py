"""Layers of our own: Keras layers with a faster training path, same weights and same maths.

Registered with Keras, so a saved model names them and loads wherever this module is imported
(notmnist.core.files.load_model imports it).
"""

import keras

SERIAL_PACKAGE = "notmnist"


@keras.saving.register_keras_serializable(package=SERIAL_PACKAGE)
class BatchNorm(keras.layers.BatchNormalization):
    """BatchNormalization that trains image batches with TensorFlow's fused kernel.

    Keras 3 normalises with separate moments and arithmetic ops: on this CPU that is about a third
    of the default CNN's training step (bench/run.py). FusedBatchNormV3 does the same sums in one
    oneDNN kernel, about 3x faster. Inference, masks, dense (2-D) inputs, other backends and
    `synchronized` keep Keras's own path, so a trained model behaves exactly as a
    keras.layers.BatchNormalization with the same weights.
    """

    def _fused_applies(self, inputs, training, mask):
        return (
            training
            and mask is None
            and not self.synchronized
            and len(inputs.shape) == 4
            and self.axis in (-1, 3)
            and keras.backend.backend() == "tensorflow"
        )

    def call(self, inputs, training=None, mask=None):
        if not self._fused_applies(inputs, training, mask):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf

        channels = inputs.shape[-1]
        scale = self.gamma if self.scale else tf.ones([channels])
        offset = self.beta if self.center else tf.zeros([channels])
        outputs, mean, variance = tf.compat.v1.nn.fused_batch_norm(
            tf.cast(inputs, "float32"),
            tf.cast(scale, "float32"),
            tf.cast(offset, "float32"),
            epsilon=self.epsilon,
            is_training=True,
        )
        # the kernel hands back the unbiased (n - 1) variance; Keras's moving average uses the biased one
        count = tf.cast(tf.size(inputs) // channels, "float32")
        variance = variance * (count - 1.0) / count
        momentum = self.momentum
        self.moving_mean.assign(self.moving_mean * momentum + mean * (1.0 - momentum))
        self.moving_variance.assign(self.moving_variance * momentum + variance * (1.0 - momentum))
        return tf.cast(outputs, self.compute_dtype)
