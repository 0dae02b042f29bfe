"""The speech modality: text to speech with ONNX voices (hibari and piper), sentence by sentence."""
