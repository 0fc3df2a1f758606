"""OpenAPI post-processing: the links drf-spectacular cannot express through ``extend_schema``."""

IDENTIFY = "/api/v1/plant-identification/identify/"
DETAIL = "/api/v1/plant-identification/identifications/{identification_id}/"


def identification_links(result, generator, request, public):
    """Link identify's 200 to the read of the identification it created (``id`` -> ``identification_id``)."""
    paths = result.get("paths", {})
    read = paths.get(DETAIL, {}).get("get")
    answered = paths.get(IDENTIFY, {}).get("post", {}).get("responses", {}).get("200")
    if read and answered:
        answered["links"] = {
            "GetIdentification": {
                "operationId": read["operationId"],
                "parameters": {"identification_id": "$response.body#/id"},
                "description": "Read the identification back.",
            }
        }
    return result
