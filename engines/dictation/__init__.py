"""Dictation: speech to text with Whisper models in CTranslate2 format (faster-whisper), on the CPU."""
