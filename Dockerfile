# Switchboard's image: `docker compose up` builds it (see compose.yaml and the README's "Team gateway").
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    SWITCHBOARD_HOME=/var/lib/switchboard
WORKDIR /app
COPY pyproject.toml README.md ./
COPY providers ./providers
COPY proxy ./proxy
RUN pip install . && useradd --system --home-dir /var/lib/switchboard --create-home switchboard
USER switchboard
EXPOSE 8642
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8642/healthz', timeout=2)"
# Binding 0.0.0.0 is allowed because the master key (SWITCHBOARD_MASTER_KEY) turns client keys on.
CMD ["switchboard", "serve", "--host", "0.0.0.0", "--port", "8642"]
