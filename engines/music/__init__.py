"""Music: text to music with MusicGen ONNX folders (and MIDI composition)."""
