"""Import TensorFlow with Keras 2 (tf-keras): tensorflow-model-optimization does not work with Keras 3.

Every quantize module that needs TensorFlow takes `tf` and `keras` from here, so the switch happens
before the first import. The benchmark and the image lists never import it.
"""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf
import tf_keras as keras

__all__ = ["keras", "tf"]
