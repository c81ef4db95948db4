# syntax=docker/dockerfile:1
# One image for every role; the command picks it:
#   metre up | poller | processor | api | migrate
# Build: docker build -t metre .   (deploy/image_check.py replays the build stage without Docker)

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: compile the kernels and install metre into a virtual environment ---------------
FROM ${PYTHON_IMAGE} AS build
# A C compiler and the zlib headers: the kernels are compiled here (kernels/_packfile.c links zlib).
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev zlib1g-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Only what the package needs (.dockerignore keeps the rest out of the context).
COPY pyproject.toml setup.py README.md LICENSE ./
COPY metre ./metre
COPY ingest ./ingest
COPY processors ./processors
COPY api ./api
COPY kernels ./kernels
RUN python -m venv /opt/metre \
    && /opt/metre/bin/pip install --no-cache-dir /src
# Fail the build if any kernel fell back to its pure-Python twin (the extensions are optional);
# -P: import the installed package, not the sources in the working directory.
RUN /opt/metre/bin/python -P -c "from metre import kernels as k; impl = {k.IMPLEMENTATION, k.TREEDIFF_IMPLEMENTATION, k.PACKFILE_IMPLEMENTATION, k.ANCESTRY_IMPLEMENTATION, k.AUTHORSHIP_IMPLEMENTATION, k.CODELINES_IMPLEMENTATION}; assert impl == {'c'}, impl" \
    && /opt/metre/bin/metre --help >/dev/null

# --- runtime: the virtual environment, the libraries it loads, an unprivileged user ---------
FROM ${PYTHON_IMAGE} AS runtime
# zlib for the pack kernel, ssh for ssh:// repositories, the CA bundle for https fetches.
RUN apt-get update \
    && apt-get install -y --no-install-recommends zlib1g openssh-client ca-certificates \
    && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 metre \
    && useradd --system --uid 10001 --gid metre --home-dir /var/lib/metre --create-home metre
COPY --from=build /opt/metre /opt/metre
ENV PATH=/opt/metre/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    METRE_DATA_DIR=/var/lib/metre
USER 10001:10001
WORKDIR /var/lib/metre
VOLUME ["/var/lib/metre"]
# 8000: the API (metre api, metre up); 8081: health and metrics of metre poller|processor.
EXPOSE 8000 8081
ENTRYPOINT ["metre"]
CMD ["up"]
