import { PartialType } from '@nestjs/swagger';
import { CreateEndpointDto } from './create-endpoint.dto';

/** Body of `PATCH /v1/endpoints/:id`: any field of the creation body. */
export class UpdateEndpointDto extends PartialType(CreateEndpointDto) {}
