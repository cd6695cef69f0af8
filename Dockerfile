# canary-analyzer image. Base pinned by version tag; bump deliberately.
#   docker build -t ghcr.io/canary-analyzer/canary-analyzer:0.1.0 .
# The tag must match the version in pyproject.toml and deploy/base/deployment.yaml.

FROM python:3.11.11-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# .dockerignore lets only pyproject.toml, README.md and analyzer/ into the context.
COPY . .
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir .

FROM python:3.11.11-slim-bookworm
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
RUN groupadd --system --gid 10001 analyzer \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin analyzer \
 && mkdir -p /var/lib/canary-analyzer /etc/canary-analyzer/configs \
 && chown 10001:10001 /var/lib/canary-analyzer
COPY --from=build /opt/venv /opt/venv
USER 10001:10001
WORKDIR /var/lib/canary-analyzer
EXPOSE 8080
ENTRYPOINT ["canary-analyzer"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8080"]
