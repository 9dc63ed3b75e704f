"""The benchmark's floor: the least a Flask view on Redis can do (one GET), same server setup.

Served by gunicorn with the service's own gunicorn.conf.py, so the ratio service/floor
measures what the session service adds over "Flask + one Redis round trip".
"""

import os

import redis
from flask import Flask, jsonify

app = Flask(__name__)
_client = redis.Redis.from_url(os.environ["REDIS_URL"], decode_responses=True)


@app.get("/floor")
def floor():
    """One Redis GET, returned as JSON."""
    return jsonify({"success": True, "value": _client.get("bench:floor")})
