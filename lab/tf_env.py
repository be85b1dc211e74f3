"""Import TensorFlow with Keras 2 (tf-keras): tensorflow-model-optimization does not work with Keras 3.

Every module of trainer, quantize and fleet that needs TensorFlow takes `tf` and `keras` from here, so
the switch happens before the first import. The rest of `lab` never imports it.
"""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf
import tf_keras as keras

__all__ = ["keras", "tf"]
