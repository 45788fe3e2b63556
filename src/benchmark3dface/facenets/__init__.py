"""Pretrained face networks converted to plain PyTorch from registry packages (dlib's
recognition ResNet, face-api's 68-landmark net, MediaPipe's BlazeFace and FaceMesh).

Each module declares its weight source (benchmark3dface.weights) and holds its reader,
converter and torch module; import the module you need (nothing heavy is imported here)."""
