def test_it_serves_the_admin_login(client, db):
    response = client.get("/admin/login/")
    assert response.status_code == 200
    assert b"Emailer" in response.content
