"""The model: one encoder on a chosen backend (torch, ONNX fp32 or int8), its export and fingerprint."""
