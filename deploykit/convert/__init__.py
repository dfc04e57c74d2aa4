"""From a trained model to a deployable one (issue 14): ``export`` (scikit-learn, PyTorch),
``optimize`` (onnxslim), ``quantize`` (int8, fp16), ``prune`` (dense chains) and ``distill`` (a PyTorch
student). Each step measures its candidates on this machine, checks them on the user's samples and
keeps one only inside its gates (docs/convert.md). The functions are ``dk.export``, ``dk.quantize``...;
import them from their modules here (``deploykit.convert.quantize``...)."""
