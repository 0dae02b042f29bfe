"""The content-safety filter: prompts at submission, outputs in the OutputPipeline."""
