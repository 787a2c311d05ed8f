import 'reflect-metadata';
import { DataSource } from 'typeorm';
import { databaseUrlFrom } from '../config/app-config';
import { dataSourceOptions } from './data-source-options';

/** The data source the TypeORM CLI uses (`npm run migration:run`). */
export default new DataSource(dataSourceOptions(databaseUrlFrom(), 2));
