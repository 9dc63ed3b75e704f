"""Every operation of the API document and the statuses it may answer (the contract)."""

FEEDBACK = "/api/session/{session_id}/messages/{message_id}/feedback"
OPERATIONS = {
    ("post", "/api/session/create"): {"201", "429", "503"},
    ("get", "/api/session/{session_id}/history"): {"200", "404", "422", "503"},
    ("get", "/api/session/{session_id}/validate"): {"200", "503"},
    ("get", "/api/session/{session_id}/context"): {"200", "404", "503"},
    ("delete", "/api/session/{session_id}"): {"200", "404", "503"},
    ("post", "/api/send-message"): {"200", "400", "409", "413", "422", "429", "503"},
    ("get", "/api/admin/stats"): {"200", "401", "404", "503"},
    ("get", "/api/admin/kb"): {"200", "401", "404", "503"},
    ("post", "/api/admin/kb/reload"): {"200", "202", "401", "404", "409", "422", "503", "504"},
    ("get", "/api/session/{session_id}/replies/{reply_id}/events"): {
        "200",
        "204",
        "404",
        "422",
        "503",
    },
    ("post", "/api/session/{session_id}/replies/{reply_id}/stop"): {"202", "404", "503"},
    ("post", FEEDBACK): {"200", "400", "404", "413", "422", "429", "503"},
}
