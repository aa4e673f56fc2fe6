def test_ready(client):
    r = client.get("/readyz")
    assert r.status_code == 200, r.text
