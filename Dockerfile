# tabserve image: dependencies and models are built in `builder`; `runtime` gets
# only the virtualenv and the model folder, and runs as an unprivileged user.
#
#   docker build -t tabserve:0.1.0 .                           # bakes a freshly trained iris model
#   docker build -t tabserve:0.1.0 --build-arg MODELS=models . # bakes the folder ./models instead
#   docker run --rm -p 8000:8000 tabserve:0.1.0
#   docker run --rm -p 8000:8000 -v "$PWD/models:/models:ro" tabserve:0.1.0   # or mount models
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
WORKDIR /src
# WHEELS names a folder of wheels in the build context (deploy/podman/wheelhouse.py makes
# one, e.g. WHEELS=build/wheels) for builds that cannot reach a package index; pip then
# installs only from it. Left empty, pip installs from the index.
ARG WHEELS=""
COPY ${WHEELS:-pyproject.toml} /wheels/
# Dependencies first, from pyproject.toml alone, so a code change reuses this layer.
COPY pyproject.toml ./
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; print('\n'.join(p['dependencies'] + p['optional-dependencies']['all']))" \
        > /tmp/requirements.txt \
    && pip install --no-cache-dir ${WHEELS:+--no-index --find-links /wheels} -r /tmp/requirements.txt
COPY README.md ./
COPY service ./service
COPY training ./training
COPY tabserve ./tabserve
RUN pip install --no-cache-dir ${WHEELS:+--no-index --find-links /wheels} --no-deps . \
    && tabserve --help > /dev/null

# MODELS names a folder of <name>/<version>/ artifacts under models/ in the build context
# (.dockerignore sends nothing else), e.g. MODELS=models. Left empty, the default iris
# model is trained here with the image's own scikit-learn (the server refuses models
# pickled by another scikit-learn major.minor).
ARG MODELS=""
COPY ${MODELS:-models/README.md} /src/models-given/
RUN if [ -n "$MODELS" ]; then \
        if [ -z "$(find /src/models-given -mindepth 3 -maxdepth 3 -name model.json)" ]; then \
            echo "MODELS=$MODELS holds no <name>/<version>/model.json" >&2; exit 1; \
        fi; \
        mkdir -p /models && cp -a /src/models-given/. /models/; \
    else \
        tabserve train --dataset iris --model random_forest --name iris --models-dir /models; \
    fi \
    && rm -f /models/README.md

FROM ${PYTHON_IMAGE} AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TABSERVE_MODELS_DIR=/models
RUN groupadd --system --gid 10001 tabserve \
    && useradd --system --uid 10001 --gid tabserve --no-create-home --shell /usr/sbin/nologin tabserve
COPY --from=builder /opt/venv /opt/venv
# Owned by root and only readable by the server: models are data, not state.
COPY --from=builder /models /models
USER 10001:10001
WORKDIR /tmp
# 8000: HTTP; 8081: the Open Inference Protocol over gRPC (TABSERVE_GRPC_PORT).
EXPOSE 8000 8081
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/v2/health/live', timeout=2)"]
# Exec form: the server is PID 1's process itself, so SIGTERM reaches uvicorn and it drains.
ENTRYPOINT ["tabserve"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
