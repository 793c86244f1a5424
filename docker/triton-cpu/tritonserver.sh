#!/bin/sh
# tritonserver from the nvidia-pytriton wheel (paths filled in when the image is built), wired as
# stack/triton.py wires it: the python backend's folder, and the base interpreter's libpython
# ahead of the wheel's bundled libraries. The stub's Python is the `python` on PATH.
LD_LIBRARY_PATH="@LIBS@${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" exec @BINARY@ \
    --backend-directory=/opt/tritonserver/backends --allow-gpu-metrics=false "$@"
