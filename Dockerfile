# The embedding service (docs/serving.md): `bge-integrations serve` on port 8080, CPU torch.
#   docker build -t bge-serve .
#   docker run -p 8080:8080 -v ~/.cache/huggingface:/home/bge/.cache/huggingface bge-serve \
#       --model BAAI/bge-small-en-v1.5 --model BAAI/bge-m3
# Arguments after the image name replace CMD (the models and any other `serve` option).
# For GPUs start from a CUDA base image and install the CUDA torch wheel instead.
FROM python:3.11-slim

ENV PIP_NO_CACHE_DIR=1 \
    PYTHONUNBUFFERED=1 \
    TOKENIZERS_PARALLELISM=false

WORKDIR /app
COPY pyproject.toml README.md ./
COPY bge_integrations ./bge_integrations
RUN pip install --index-url https://download.pytorch.org/whl/cpu "torch==2.13.0" \
    && pip install ".[server]"

RUN useradd --create-home bge
USER bge
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/health')"

# 0.0.0.0 inside the container: the port is reachable only where `docker run -p` publishes it
ENTRYPOINT ["bge-integrations", "serve", "--host", "0.0.0.0", "--port", "8080"]
CMD ["--model", "BAAI/bge-small-en-v1.5"]
