from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file="../.env", env_ignore_empty=True, extra="ignore")
    API_V1_STR: str = "/api/v1"
    SECRET_KEY: str
    PROJECT_NAME: str
    DATABASE_URL: str
    SMTP_PASSWORD: str | None = None
    FIRST_SUPERUSER: str = Field()
    FIRST_SUPERUSER_PASSWORD: str

    def engine_url(self) -> str:
        return self.DATABASE_URL.replace("postgresql://", "postgresql+psycopg://", 1)


settings = Settings()  # type: ignore
