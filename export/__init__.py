"""The torch side of rnnrbm-live: model, data batches, training, evaluation, ONNX export."""
