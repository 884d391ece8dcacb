FROM python:3.12-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY domain domain
COPY engine engine
COPY projections projections
COPY api api
COPY adapters adapters
RUN pip install --no-cache-dir . && useradd --create-home postline && mkdir /data \
    && chown postline /data
USER postline
ENV POSTLINE_DATA_DIR=/data
EXPOSE 8025 2525
ENTRYPOINT ["postline"]
CMD ["serve", "--http", "0.0.0.0:8025", "--smtp", "0.0.0.0:2525", "--bootstrap"]
