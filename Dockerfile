# The studio on an NVIDIA GPU server:
#   docker build -t sd-studio .
#   docker run --gpus all -p 7860:7860 -v $PWD/models:/models -v $PWD/outputs:/outputs \
#       -v $HOME/.cache/huggingface:/root/.cache/huggingface sd-studio
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04

RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-venv && rm -rf /var/lib/apt/lists/*
WORKDIR /app
ENV VIRTUAL_ENV=/venv PATH=/venv/bin:$PATH PYTHONUNBUFFERED=1
RUN python3 -m venv /venv

# xformers is the optional accelerator. xformers 0.0.34's own metadata pins torch==2.10.0, so this pair is
# installed together from PyTorch's CUDA 12.8 index; the studio falls back to SDPA if xformers ever fails to load.
RUN pip install --no-cache-dir torch==2.10.0 --index-url https://download.pytorch.org/whl/cu128 \
 && pip install --no-cache-dir xformers==0.0.34 --index-url https://download.pytorch.org/whl/cu128

COPY requirements.txt requirements-nodeps.txt ./
# Everything else from requirements.txt, keeping the CUDA torch installed above.
RUN grep -v '^torch==' requirements.txt > /tmp/requirements.txt \
 && pip install --no-cache-dir -r /tmp/requirements.txt \
 && pip install --no-cache-dir --no-deps -r requirements-nodeps.txt

COPY . .
VOLUME ["/models", "/outputs"]
EXPOSE 7860
CMD ["python", "app.py", "--listen", "--no-browser", "--models-dir", "/models", "--outputs", "/outputs"]
