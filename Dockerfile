# One image for every service of docker-compose.yml: worker, beat, flower, web, simulator.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first (cached while only the code changes), then the project itself.
COPY pyproject.toml README.md ./
COPY cancelq ./cancelq
COPY worker ./worker
COPY producers ./producers
COPY simulator ./simulator
COPY web ./web
COPY celeryconfig.py ./
RUN pip install '.[web]' \
    && useradd --create-home --uid 10001 cancelq

# Flower reads flowerconfig.py (settings only; the auth guard lives with the Celery app).
COPY flowerconfig.py ./

USER cancelq
CMD ["celery", "-A", "worker", "worker", "-l", "info", "-n", "worker@%h"]
