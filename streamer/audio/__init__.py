"""Audio that training and serving share: the segmenter (VAD turns), the speech gate, the
telephone codec, file and stream decoding. ``offline_training`` may import this room and
``core`` only."""
