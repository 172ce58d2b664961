# The wslocust image that the Kubernetes manifests in k8s/ run.
#   docker build -t wslocust:latest .
# Its ENTRYPOINT is `locust` (wslocust is imported by the locustfiles), so the
# manifests give only Locust's arguments; the reference server's container
# sets its command to `wslocust`. tests/test_k8s.py runs these same commands,
# with this WORKDIR and ENV, in network namespaces.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The package first (its dependencies are wheels: no compiler needed), so that
# editing a locustfile does not reinstall it.
COPY setup.py setup.cfg README.md /tmp/src/
COPY wslocust /tmp/src/wslocust
RUN pip install /tmp/src && rm -rf /tmp/src

WORKDIR /app
COPY locustfiles ./locustfiles

# Any non-root user: the manifests run it as 10001 with a read-only root file system.
USER 10001:10001
# 8089: web UI and REST API; 5557: workers to master; 3003: `wslocust serve`.
EXPOSE 8089 5557 3003
ENTRYPOINT ["locust"]
CMD ["-f", "locustfiles/echo.py"]
