# The intentstream worker. Built by docker-compose.yml; on its own:
#   docker build -t intentstream . && docker run --rm intentstream intentstream --help
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    INTENTSTREAM_WORKER__DATA_DIR=/tmp/intentstream-data

WORKDIR /app
COPY pyproject.toml setup.py README.md ./
COPY stream ./stream
COPY agents ./agents
COPY config ./config
RUN pip install . \
    && useradd --system --uid 10001 --no-create-home intentstream

USER intentstream
# the worker's HTTP endpoints (/health, /metrics); see [worker] web_port
EXPOSE 6066
CMD ["intentstream", "worker"]
